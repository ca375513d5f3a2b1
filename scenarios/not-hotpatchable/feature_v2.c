/* A new feature_level(). It cannot be applied live: the old function is three
 * bytes long, too short for a jump. */
int feature_level(void) { return 0; }
