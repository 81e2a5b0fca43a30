"""The Hydra configs cnnlab ships (``conf/`` at the top of a checkout links here); a package,
so that Hydra finds them by module name wherever cnnlab is installed."""
