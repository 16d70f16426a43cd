# find_package(spinenet): the imported target spinenet::spinenet (the shared library, with
# spinenet.h's folder as its include path). Its dependencies are private to it, so there is
# nothing more to find.
include("${CMAKE_CURRENT_LIST_DIR}/spinenetTargets.cmake")
