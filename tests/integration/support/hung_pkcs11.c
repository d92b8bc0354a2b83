/*
 * A PKCS#11 module that stops answering on demand, for the custody tests.
 *
 * It forwards every call to the module named by REAL_MODULE (SoftHSM2), but
 * C_Login, C_FindObjectsInit and C_Sign wait, before reaching it, for as
 * long as the file HANG_FILE exists: a token that hangs, as an HSM appliance
 * does when its network path or firmware stalls. Both names are given at
 * compile time (-DREAL_MODULE="..." -DHANG_FILE="...").
 *
 * No PKCS#11 header is needed: the function list is the 2.40 layout, a
 * version (two bytes, padded) and 68 function pointers in the standard's
 * order, of which only the indices below are touched.
 */
#include <dlfcn.h>
#include <string.h>
#include <unistd.h>

typedef unsigned long CK_RV;
typedef void (*CK_FN)(void);

#define FUNCTIONS 68
#define GET_FUNCTION_LIST 3
#define LOGIN 18
#define FIND_OBJECTS_INIT 26
#define SIGN 43
#define CKR_OK 0UL
#define CKR_GENERAL_ERROR 5UL

struct function_list {
    unsigned char version[2];
    CK_FN functions[FUNCTIONS];
};

static struct function_list wrapped;
static struct function_list *real;

static void wait_while_hung(void) {
    while (access(HANG_FILE, F_OK) == 0) {
        usleep(5000);
    }
}

typedef CK_RV (*login_fn)(unsigned long, unsigned long, unsigned char *, unsigned long);
static CK_RV hung_login(unsigned long session, unsigned long user, unsigned char *pin,
                        unsigned long length) {
    wait_while_hung();
    return ((login_fn)real->functions[LOGIN])(session, user, pin, length);
}

typedef CK_RV (*find_init_fn)(unsigned long, void *, unsigned long);
static CK_RV hung_find_objects_init(unsigned long session, void *template, unsigned long count) {
    wait_while_hung();
    return ((find_init_fn)real->functions[FIND_OBJECTS_INIT])(session, template, count);
}

typedef CK_RV (*sign_fn)(unsigned long, unsigned char *, unsigned long, unsigned char *,
                         unsigned long *);
static CK_RV hung_sign(unsigned long session, unsigned char *data, unsigned long length,
                       unsigned char *signature, unsigned long *signature_length) {
    wait_while_hung();
    return ((sign_fn)real->functions[SIGN])(session, data, length, signature, signature_length);
}

typedef CK_RV (*get_function_list_fn)(struct function_list **);

CK_RV C_GetFunctionList(struct function_list **list) {
    if (real == NULL) {
        void *module = dlopen(REAL_MODULE, RTLD_NOW | RTLD_LOCAL);
        if (module == NULL) {
            return CKR_GENERAL_ERROR;
        }
        get_function_list_fn get = (get_function_list_fn)dlsym(module, "C_GetFunctionList");
        if (get == NULL || get(&real) != CKR_OK) {
            return CKR_GENERAL_ERROR;
        }
        memcpy(&wrapped, real, sizeof wrapped);
        wrapped.functions[GET_FUNCTION_LIST] = (CK_FN)C_GetFunctionList;
        wrapped.functions[LOGIN] = (CK_FN)hung_login;
        wrapped.functions[FIND_OBJECTS_INIT] = (CK_FN)hung_find_objects_init;
        wrapped.functions[SIGN] = (CK_FN)hung_sign;
    }
    *list = &wrapped;
    return CKR_OK;
}
