"""Where anonymized frames go: the sink interface, video files (with the source's audio) and the ZeroMQ publisher."""
