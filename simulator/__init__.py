"""A discrete-event radio world that runs the real firmware on hundreds of virtual nodes.

``world.World`` is the event loop, ``radio.Channel`` the propagation and
collision model, ``hal_sim.SimHAL`` the firmware's HAL over both, ``energy``
the transceiver's state currents and the cell, ``profiles`` the meters'
consumption, ``scenarios`` the layouts, ``metrics`` the figures of
``balans simulate`` (simulator/cli.py). docs/mesh.md describes the models.
"""
