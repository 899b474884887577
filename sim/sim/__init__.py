"""Simulated GPU Kubernetes cluster used by the llmops.ollama tests and demo.

The collection never imports this package.
"""
