"""CAST Explorer: `python app.py [--host H] [--port P] [--model M] [--share]` serves the UI (locally or on
Hugging Face Spaces). Same as `cast-explorer`; `python app.py --help` lists the options."""
import sys

from app.main import main

if __name__ == "__main__":
    sys.exit(main())
