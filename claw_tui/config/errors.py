KeyPath = tuple[str | int, ...]
class ConfigError(Exception):
    """A configuration problem, located: `str()` is "{path}:{line}: {key}: {message}".

    `line` is None when the problem has no place in a file (a missing file, a value built in code); `key` is ""
    for problems of the file as a whole (a TOML syntax error); either part is then left out of `str()`.
    """

    def __init__(
        self,
        message: str,
        *,
        path: Path | None = None,
        key: str = "",
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.path = path
        self.key = key
        self.line = line
        self.column = column

    def __str__(self) -> str:
        where = str(self.path) if self.path is not None else "<config>"
        if self.line is not None:
            where += f":{self.line}"
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"

class _SchemaError(Exception):
    """A problem at a key path, before it is given a file and a line."""

    def __init__(self, key_path: KeyPath, message: str) -> None:
        super().__init__(message)
        self.key_path = key_path
        self.message = message

def format_key_path(key_path: KeyPath) -> str:
    text = ""
    for part in key_path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text

