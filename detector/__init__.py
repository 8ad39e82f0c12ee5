"""Shared core of the AI-generated-image detector.

One model definition, one preprocessing definition and one metadata format,
imported by training, export and the TorchServe handler alike.
"""
