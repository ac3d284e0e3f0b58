"""The top floor: the ``sluice`` command, the supervisor that runs the
gateway's processes, their layout and the start-up bootstrap. It may import
anything below (analytics included); nothing but loadtest and tests imports it."""
