"""String types for anything a person or a client types in.

PostgreSQL refuses NUL characters and control characters make logs and terminals lie, so
free text is refused at the edge with a 422 instead of failing deep inside.
"""

from typing import Annotated

from pydantic import Field

SINGLE_LINE = r"^[^\x00-\x1f\x7f]*$"
OBJECT_ID = r"^[A-Za-z0-9._-]+$"


Name = Annotated[str, Field(min_length=1, max_length=100, pattern=SINGLE_LINE)]
Note = Annotated[str, Field(max_length=200, pattern=SINGLE_LINE)]
ObjectId = Annotated[str, Field(min_length=1, max_length=64, pattern=OBJECT_ID)]
