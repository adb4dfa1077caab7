"""The CAST Explorer Gradio app: thin callbacks over the `cast` library."""
