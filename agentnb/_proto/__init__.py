"""Code generated from protos/agentnb.proto by protos/generate.py. Do not edit."""
