class SimError(Exception):
    """A failure with a one-line cause and a one-line fix."""

    def __init__(self, cause: str, fix: str):
        super().__init__(f"{cause}\n  fix: {fix}")
        self.cause = cause
        self.fix = fix
