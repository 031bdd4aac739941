"""Many cameras and long footage archives on a Ray cluster (docs/scaling.md).

Two modes, both optional and imported only when `--cluster` is given:

- archive (`streamd anonymize INPUT_DIR -o OUTPUT_DIR --cluster ...`): every file is a set of Ray
  tasks; a long video is cut at key frames into segments that run in parallel and are joined back,
  packet for packet, with the input's timestamps (`streamd.cluster.archive`).
- fleet (`streamd run CONFIG --cluster ...`): every camera is a named Ray actor that Ray restarts on
  another node when its node is lost (`streamd.cluster.fleet`).

Ray is the `cluster` extra: `pip install 'streamd[cluster]'`.
"""
