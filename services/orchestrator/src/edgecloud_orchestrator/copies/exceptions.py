from edgecloud_servicekit.problems import NotFound


class CopyNotFound(NotFound):
    default_code = "copy_not_found"

    def __init__(self, container_id: str, device: str) -> None:
        super().__init__(f"container {container_id} keeps no copy on {device}")
