int whoami(void) { return 2; }
