/* zygote_fail: _faasm_zygote returns 9, which must fail the upload. */
__attribute__((export_name("_faasm_zygote"))) int faasm_zygote(void) {
    return 9;
}

int main(void) {
    return 0;
}
