"""The permissions the connector needs, named as UiPath names them both ways, for every message that asks for one.

Since February 2025 IXP on Automation Cloud grants access through roles, not the legacy permission
names (api-shapes/README.md, "Roles"): a message names the legacy permission and the IXP role
permission that grants it. UiPath's pages name the IXP permission for "Consume streams" ("Stream -
Consume", which the IXP Developer and IXP Project Admin roles include) and "View sources" ("Source -
Read"); for "View labels" and "View streams" they give no IXP name, so the messages name the roles
that include "Stream - Consume" (reading a stream needs both). The manifest's 403 messages (YAML)
say the same in their own words; docs/commsmining.md "Set up your tenant" has the table.
"""

ROLES = "the IXP Developer and IXP Project Admin roles"
CONSUME_STREAMS = '"Consume streams" (IXP: "Stream - Consume")'
VIEW_SOURCES = '"View sources" (IXP: "Source - Read")'
VIEW_LABELS = '"View labels"'
VIEW_STREAMS = '"View streams"'
DATASET_EXPORT = "'Dataset - Export' (IXP role permission; legacy 'Export datasets')"


def needs(*permissions: str, project: str = "") -> str:
    """`"Consume streams" (IXP: "Stream - Consume") and "View labels" on project 'acme' (in IXP Developer ...)`."""
    listed = ", ".join(permissions[:-1]) + (" and " if len(permissions) > 1 else "") + permissions[-1]
    where = f" on project '{project}'" if project else ""
    return f"{listed}{where} (granted by {ROLES})"

