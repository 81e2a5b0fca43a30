"""Regenerate the README's generated tables (model parameter counts): ``python scripts/update_readme.py``."""

from cnnlab.dev.docs import update_readme

if __name__ == "__main__":
    print("README.md updated" if update_readme() else "README.md already up to date")
