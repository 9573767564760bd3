"""archiver: grab at-risk research pages into sound WARC files, check them, upload them."""

__version__ = "0.1.0"

PROJECT_URL = "https://github.com/archiver-project/archiver"
DEFAULT_USER_AGENT = f"archiver/{__version__} (+{PROJECT_URL}; preserving research pages)"
