"""Fixtures the official Engine.IO and Socket.IO protocol test suites run against.

``python -m wsgate.conformance engineio --port P`` and ``python -m
wsgate.conformance socketio --port P`` serve wsgate's own engine with the
suites' reference configuration (pingInterval 300 ms, pingTimeout 200 ms,
maxPayload 1,000,000, connect timeout 1,000 ms, any origin). They exercise the
protocol layer alone: no security runs here, and nothing of them is reachable
from ``wsgate demo`` or a user's App.
"""
