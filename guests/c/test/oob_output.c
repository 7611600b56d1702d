/* oob_output: sets the output from a range beyond linear memory; the call must trap. */
#include "faasm.h"

int main(void) {
    __faasm_write_output((const void *)0x7fffff00, 4096);
    return 0;
}
