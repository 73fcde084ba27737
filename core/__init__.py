"""Ballspot Studio's core library: everything but the browser UI (never imports gradio)."""
