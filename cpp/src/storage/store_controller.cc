// PLACEHOLDER: being written (see cpp/include/lmcache/l2_controllers.h).
