// Fixture: a folder without a rank (must be reported).
