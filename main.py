"""Runs the connector from a source checkout: `python main.py spec|check|discover|read ...`."""

from source_commsmining.run import run

if __name__ == "__main__":
    run()
