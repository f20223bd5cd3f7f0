"""The demo chat app of demo-contract.md, built only from wsgate's public API."""
