"""The registry and tracking adapter: the only part of modelmill that imports MLflow. One
:class:`~modelmill.registry.tracking.Tracker` per command is built and passed in.
"""
