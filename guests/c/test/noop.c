/* noop: returns 0 with no output. */
int main(void) {
    return 0;
}
