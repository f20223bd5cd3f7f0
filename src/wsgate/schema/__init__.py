"""Documents and typed clients generated from an App's gateways.

- :func:`asyncapi_document` / :func:`asyncapi_json`: the AsyncAPI 3.0 document
  (``wsgate asyncapi MODULE:APP``; served at ``Settings.asyncapi_path``).
- :func:`typescript_declarations`: TypeScript types for socket.io-client
  (``wsgate typescript MODULE:APP``).

Both read :attr:`wsgate.App.namespaces`; docs/asyncapi.md says how each
Python type maps to JSON Schema and TypeScript.
"""

from wsgate.schema.asyncapi import asyncapi_document, asyncapi_json
from wsgate.schema.typescript import typescript_declarations

__all__ = ["asyncapi_document", "asyncapi_json", "typescript_declarations"]
