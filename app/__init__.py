"""Ballspot Studio browser UI (Gradio). Lays out the UI and calls core."""
