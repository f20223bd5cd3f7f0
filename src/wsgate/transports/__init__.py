"""Transports: each turns a wire protocol into the core's connect, event and disconnect calls.

Socket.IO (python-socketio) and plain WebSocket live here, next to the
uvicorn HTTP protocols that hold the connect deadline below both of them
(:mod:`wsgate.transports.deadline`). Nothing here decides policy: that is the
core's and the security layer's job.
"""
