import pytest

from edgecloud_contracts.identity import device_id, device_key, normalise_mac


def test_key_is_uri_safe_and_stable() -> None:
    assert device_key("rpi-kitchen", "B8:27:EB:12:34:56") == "rpi_kitchen_b827eb123456"
    assert device_key("Node.Local", "b8-27-eb-12-34-56") == "node_local_b827eb123456"
    assert device_key("---", "b8:27:eb:12:34:56") == "node_b827eb123456"


def test_id_is_hostname_slash_mac() -> None:
    assert device_id("rpi-kitchen", "B8:27:EB:12:34:56") == "rpi-kitchen/b8:27:eb:12:34:56"


@pytest.mark.parametrize("bad", ["", "b8:27:eb", "zz:27:eb:12:34:56", "b827eb123456"])
def test_bad_mac_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="not a MAC"):
        normalise_mac(bad)
