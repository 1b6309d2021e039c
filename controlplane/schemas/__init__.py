"""Wire schemas shared with agents. They import nothing from the store or the API."""
