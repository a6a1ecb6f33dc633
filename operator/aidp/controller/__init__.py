"""The Kopf operator: thin handlers (handlers.py) around reconcilers that hold the logic's I/O."""
