"""The hostile-input corpus (campaign files, formulas, tables, oracle results) and its tests."""
