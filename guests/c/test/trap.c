/* trap: executes `unreachable`. */
int main(void) {
    __builtin_trap();
}
