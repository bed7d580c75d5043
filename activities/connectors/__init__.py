"""Connectors: where case evidence comes from.

`Connector` is the port; `LocalConnector` reads the demo world in PostgreSQL and
`HttpConnector` asks a real system's service. Both answer with the same items, validated
against the same per-source models (`SCHEMAS`), so policy rules see the same types either way.
"""

from activities.connectors._http import HttpConnector
from activities.connectors._items import (
    SCHEMAS,
    ChatThread,
    CrmItems,
    FinanceItems,
    IamItems,
    ProcurementItems,
    SourceSchema,
    VendorMasterItems,
)
from activities.connectors._local import LocalConnector
from activities.connectors._port import Connector, TransientSourceError

__all__ = [
    "SCHEMAS",
    "ChatThread",
    "Connector",
    "CrmItems",
    "FinanceItems",
    "HttpConnector",
    "IamItems",
    "LocalConnector",
    "ProcurementItems",
    "SourceSchema",
    "TransientSourceError",
    "VendorMasterItems",
]
