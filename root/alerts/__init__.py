"""The root's alert engine: rules, conditions, lives, dispatch and receivers."""
