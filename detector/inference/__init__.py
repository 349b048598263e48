"""The Python inference API, frame sources (files, cameras, streams) and sinks."""
