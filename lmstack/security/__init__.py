"""Security: attacks on a model and its server, measured, and the defences against them."""
