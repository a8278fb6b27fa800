"""A model's files, below both resolution and export: fetching a folder (local, built-in, Hub), reading an export
folder once, and the manifest an export carries."""
