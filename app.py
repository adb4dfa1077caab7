"""CAST Explorer: `python app.py` serves the UI (locally or on Hugging Face Spaces). Same as `cast-explorer`."""
from app.main import main

if __name__ == "__main__":
    main()
