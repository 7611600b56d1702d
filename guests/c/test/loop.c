/* loop: spins forever; only the call's deadline ends it. */
int main(void) {
    volatile unsigned counter = 0;
    for (;;) {
        counter++;
    }
}
