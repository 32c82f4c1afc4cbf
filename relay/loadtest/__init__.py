"""relay-loadtest: synthetic producers and consumers that measure a relay worker's
forwarding rate, delivery, latency and CPU (see ``python -m relay.loadtest --help``)."""
