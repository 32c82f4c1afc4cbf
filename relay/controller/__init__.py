"""The controller side: what runs in the application's process.

`relay.create_worker()` (worker.py) spawns a worker process and returns a `Worker` proxy;
Router, transports, Producer, Consumer and RTP observers are proxies whose methods are
requests over the worker's pipe (channel.py) and whose events are its notifications.
ortc.py holds the RTP capability and parameter logic (mediasoup's semantics). `relay`
re-exports the public names; import from there.
"""
