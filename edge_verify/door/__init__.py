"""``edge-verify door``: the lock controller. It subscribes to the signed events of one or more verifier
devices and opens a relay for a valid, fresh ``granted`` only (docs/DOOR.md).

It runs on a Pi with no model: nothing here imports the face layers, numpy or OpenCV (a test checks the
import graph). Modules: ``config`` (door.toml), ``gate`` (the checks every event passes), ``replay`` (the
last accepted ``seq`` per device and boot, in SQLite), ``lock`` (relay and door contact through
gpiozero), ``controller`` (MQTT), ``cli`` (the command).
"""
