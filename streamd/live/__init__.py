"""Live view of the anonymized frames for standard players and browsers.

Each camera with `outputs.live` gets a `LiveFeed` fed by a `LiveSink`, a sink like the file and
ZeroMQ outputs: it sees exactly the frames the pipeline publishes, after anonymization, never the
source. From the feed the HTTP server of `streamd run` serves MJPEG (`mjpeg.py`), HLS made by PyAV
(`hls.py`) and a page listing the cameras (`page.py`); `routes.py` maps URLs to them and
`views.py` holds the feeds of all cameras across restarts and reloads.
"""
