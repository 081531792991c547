"""Graphviz and Mermaid drawings of turnout definitions, with optional instance overlays."""
