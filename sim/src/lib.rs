//! hami-sim: the discrete-event simulator (not built yet; see the simulator issue).
