"""Gradio web app: Chat and Add-character tabs over the ChatEngine (`ui.app.build_app`)."""
