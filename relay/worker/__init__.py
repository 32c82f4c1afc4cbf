"""The worker process side of relay: channel, request dispatch, and the media objects."""
