"""The peer-to-peer channel two nodes use during a migration (MQTT through the target's broker).

``wire`` holds the message and file formats and their checks, ``channel`` the
:class:`~edgecloud_agent.peers.channel.PeerChannel` that the rest of the agent calls; aiomqtt
is used nowhere else.
"""
