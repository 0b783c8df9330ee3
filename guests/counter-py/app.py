"""Entry module of the Python counter; the class lives in handler.py (componentize-py finds
an exported interface's implementation in the module of the same name)."""
