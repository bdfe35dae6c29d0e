"""The declarative streams against the CDK's HttpMocker, as Airbyte's own connectors test theirs."""
